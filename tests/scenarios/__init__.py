"""Tests of the scenarios shipped in ``scenarios/``."""
