"""Tests of the app services in src/."""
