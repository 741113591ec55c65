"""einsynth hw package."""
