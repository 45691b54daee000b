"""servicewatch's benchmark harness (issue #11): `python -m bench --help`.

One module per measurement: baselines (raw aiokafka, plain Faust), throughput (the
servicewatch worker draining a backlog), latency, memory, recovery, scale-out, profiling;
report prints the tables. bench/soak.py is the separate long-running soak.
"""
