"""Legal cases (matters): who and what a case is about, its holds, and its reviewers."""
