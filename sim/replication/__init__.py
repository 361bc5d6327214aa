"""One replication: sample the workload, serve it on the fleet and the hosted API, and turn
the records into metrics and bills (:func:`sim.replication.simulate.simulate`)."""
