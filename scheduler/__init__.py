"""The scheduler: deferrable jobs planned into the providers' usage windows.

``windows`` turns the quota policy's subscription windows into slots over a horizon,
``forecast`` predicts the interactive use inside them, ``problem`` holds the types a
plan is made of, and ``planner`` solves it (``milp`` first, ``greedy`` as the fallback).
"""
