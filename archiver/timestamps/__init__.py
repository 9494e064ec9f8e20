"""Trusted timestamps (RFC 3161): a Time-Stamp Authority vouches for when each ledger seal
and audit head existed, so deleting the newest seals or rewriting a whole chain shows.

- `models`: the `timestamp_tokens` table and the line each kind of token covers;
- `tsa`: asking the TSA for a token and checking one offline, and `stamp`/`check_token`
  for other evidence (a production's manifest);
- `stamping`: the scheduled job that notes new evidence and stamps it, with retries;
- `checking`: `arsip verify --timestamps`;
- `report`: the figures of `arsip stats` and /admin/ (`tsa_url`: the URL without its
  login); `cli`: `arsip timestamps ...`.
"""
