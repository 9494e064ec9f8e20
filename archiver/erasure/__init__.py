"""Data subjects' erasure requests (GDPR Art. 17): erase what may go, keep what a hold or
a retention policy must keep, and erase that too once it may go."""
