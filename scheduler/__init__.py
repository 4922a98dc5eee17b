"""The scheduler: deferrable jobs planned into the providers' usage windows.

``windows`` turns the quota policy's subscription windows into slots over a horizon,
``forecast`` predicts the interactive use inside them, ``problem`` holds the types a
plan is made of, and ``planner`` solves it (``milp`` first, ``greedy`` as the fallback);
``dispatcher`` sends the jobs at their slots. ``history`` reads the windows' past use from
ClickHouse, from which ``forecast_publisher`` (run by the engine) learns the forecast and
``report`` compares two periods with the clairvoyant optimum; ``simulation`` runs two simulated
weeks of jobs through the planner.
"""
