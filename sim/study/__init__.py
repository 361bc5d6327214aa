"""The Monte Carlo layer: replications and their intervals, the options a scenario is answered
by and the decision, sweeps on any executor with a resumable store, the crossover, capacity
planning and sensitivity. Everything here runs :func:`sim.replication.simulate.simulate`
many times; nothing here reads a file or draws a figure."""
