"""kolmo's benchmarks: runnable scripts, never imported by kolmo itself."""
