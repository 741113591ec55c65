"""einsynth explore package."""
