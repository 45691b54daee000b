"""The pure domain core of servicewatch: no Kafka, no Faust, no wall clock.

Time always comes in as a parameter (epoch seconds), so the same code serves the
live worker, a replay and the tests, and gives them the same answers.
"""
