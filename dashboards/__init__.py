"""Grafana dashboards for servicewatch, built in Python with grafana-foundation-sdk.

``python -m dashboards.build`` writes the JSON files next to this module (provisioned into
Grafana from files); ``python -m dashboards.render`` draws PNGs of their panels from a live
Prometheus with matplotlib.
"""
