"""Fleet alarms over time: risk at every readout, alarms with hysteresis, and what they cost.

Readouts are rows sorted by vehicle then time. An alarm turns on at the readout that makes
``min_consecutive`` readouts in a row with risk >= ``tau_on``, and off at the first readout
with risk < ``tau_off`` (``tau_off`` <= ``tau_on``), so a dip between the two thresholds
does not end it. A readout's state holds until the next readout; for a repaired vehicle the
last readout's state holds until the repair.

For a repaired vehicle the *danger window* is the last ``horizon`` time units before the
repair. An onset is a false alarm on a censored vehicle, or when its episode ended more than
``horizon`` before the repair. A repair is detected when an alarm is on at its last readout
(lead time: repair time minus that episode's onset) or an onset falls inside the danger
window (lead time from the first such onset).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from fractions import Fraction

import numpy as np

FA_RATES = (10.0, 5.0, 2.5, 1.0)  # false alarms per 1000 time units, for the sensitivity table


@dataclass
class Fleet:
    """Readouts of the monitored vehicles: ``vehicle`` and ``time`` per row (sorted), and per
    vehicle (in order of first appearance) whether it was repaired and when its study ended."""

    vehicle: np.ndarray
    time: np.ndarray
    repaired: np.ndarray  # per vehicle
    end: np.ndarray  # per vehicle: repair time, or end of study for censored vehicles

    def __post_init__(self) -> None:
        self.start = np.r_[0, np.flatnonzero(self.vehicle[1:] != self.vehicle[:-1]) + 1]
        self.row_vehicle = np.repeat(np.arange(len(self.start)),
                                     np.diff(np.r_[self.start, len(self.vehicle)]))
        if len(self.start) != len(self.repaired):
            raise ValueError(f"{len(self.start)} vehicles in the readouts but "
                             f"{len(self.repaired)} repair flags")
        last = np.r_[self.start[1:], len(self.time)] - 1
        self.last = last
        # Each readout's state lasts until the next readout (or the repair, after the last).
        following = np.r_[self.time[1:], 0.0]
        following[last] = np.where(self.repaired, self.end, self.time[last])
        self.duration = np.maximum(following - self.time, 0.0)


def alarm_state(fleet: Fleet, risk: np.ndarray, tau_on: float, tau_off: float,
                min_consecutive: int) -> np.ndarray:
    """Whether the alarm is on at each readout (vectorised over all vehicles)."""
    if tau_off > tau_on:
        raise ValueError(f"fleet.tau_off ({tau_off}) must not exceed fleet.tau_on ({tau_on})")
    rows = np.arange(len(risk))
    high = risk >= tau_on
    first_row = fleet.start[fleet.row_vehicle]
    # Length of the run of high readouts ending at each row, restarting at each vehicle.
    last_low = np.maximum(np.maximum.accumulate(np.where(high, -1, rows)), first_row - 1)
    run = np.where(high, rows - last_low, 0)
    switch_on = run >= min_consecutive
    switch_off = risk < tau_off
    last_on = np.maximum.accumulate(np.where(switch_on, rows, -1))
    last_off = np.maximum.accumulate(np.where(switch_off, rows, -1))
    return (last_on >= first_row) & (last_on > last_off)


def exact_sum(values: np.ndarray) -> Fraction:
    """The exact sum of float64 ``values``: sums of a fleet's parts add up to the same number
    whatever the parts (floating-point sums depend on their order)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    mantissa, exponent = np.frexp(values[values != 0])
    whole = (mantissa * 2.0**53).astype(np.int64)  # values = whole * 2**(exponent - 53)
    order = np.argsort(exponent, kind="stable")
    exponents, starts = np.unique(exponent[order], return_index=True)
    if not len(exponents):
        return Fraction(0)
    # int64 sums of 27-bit halves are exact for up to 2**36 values
    high = np.add.reduceat(whole[order] >> 26, starts)
    low = np.add.reduceat(whole[order] & (2**26 - 1), starts)
    return sum((Fraction((int(h) << 26) + int(lo)) * Fraction(2) ** (int(e) - 53)
                for h, lo, e in zip(high, low, exponents, strict=True)), Fraction(0))


@dataclass
class AlarmSummary:
    """What an alarm setting did over some vehicles; :meth:`merge` adds up the summaries of
    vehicles taken apart (buckets) into the summary of all of them, exactly."""

    detected: int  # repairs detected
    repairs: int
    lead_times: np.ndarray  # of the detected repairs
    false_alarms: int
    onsets: int
    alarm_time: Fraction
    observed_time: Fraction
    danger_time: Fraction
    danger_alarm_time: Fraction

    @classmethod
    def merge(cls, parts: list[AlarmSummary]) -> AlarmSummary:
        return cls(**{field.name: np.concatenate([p.lead_times for p in parts])
                      if field.name == "lead_times" else sum(getattr(p, field.name) for p in parts)
                      for field in fields(cls)})

    def metrics(self) -> dict:
        alarm_time, observed_time = float(self.alarm_time), float(self.observed_time)
        danger_time, danger_alarm_time = float(self.danger_time), float(self.danger_alarm_time)
        per_1000 = 1000.0 / max(observed_time, 1e-12)
        quartiles = (np.percentile(self.lead_times, [25, 50, 75]).tolist()
                     if len(self.lead_times) else [None] * 3)
        return {
            "repairs": self.repairs,
            "detection_rate": self.detected / self.repairs if self.repairs else None,
            "false_alarms": self.false_alarms,
            "false_alarms_per_1000": self.false_alarms * per_1000,
            "lead_time_median": quartiles[1],
            "lead_time_quartiles": [quartiles[0], quartiles[2]],
            "flicker_onsets_per_1000_alarm_time": (
                self.onsets * 1000.0 / alarm_time if alarm_time else 0.0),
            "alarm_time_share": alarm_time / max(observed_time, 1e-12),
            "time_precision": danger_alarm_time / alarm_time if alarm_time else None,
            "time_recall": danger_alarm_time / danger_time if danger_time else None,
        }


def detections(fleet: Fleet, state: np.ndarray, horizon: float
               ) -> tuple[np.ndarray, np.ndarray, int]:
    """Of one alarm state: per vehicle the onset time its repair's detection counts from
    (inf: none), the onset of each readout, and the false alarms."""
    rows = np.arange(len(state))
    previous = np.r_[False, state[:-1]]
    previous[fleet.start] = False
    onset = state & ~previous
    # Each episode's onset row and end time (the time its last on-readout's state ends).
    episode_start = np.maximum.accumulate(np.where(onset, rows, -1))
    following_off = np.r_[~state[1:], True]
    following_off[fleet.last] = True
    episode_last = state & following_off
    end_time = fleet.time + fleet.duration
    repaired_row = fleet.repaired[fleet.row_vehicle]
    repair_time = fleet.end[fleet.row_vehicle]
    # False alarms: onsets on censored vehicles, or episodes ending before the danger window.
    ended = episode_last & (~repaired_row | (end_time < repair_time - horizon - 1e-9))
    false_alarms = int((onset & ~repaired_row).sum() + (ended & repaired_row).sum())
    # Detection per repaired vehicle: on at the last readout, or an onset in the window.
    in_window = onset & repaired_row & (repair_time - fleet.time <= horizon + 1e-9)
    first_in_window = np.full(len(fleet.start), np.inf)
    np.minimum.at(first_in_window, fleet.row_vehicle[in_window], fleet.time[in_window])
    last_rows = fleet.last
    onset_of_last = fleet.time[np.maximum(episode_start[last_rows], 0)]
    return np.where(state[last_rows], onset_of_last, first_in_window), onset, false_alarms


def summarise(fleet: Fleet, state: np.ndarray, horizon: float) -> AlarmSummary:
    """Episodes, detections, lead times, false alarms and time overlap of one alarm state."""
    onset_time, onset, false_alarms = detections(fleet, state, horizon)
    repaired = fleet.repaired.astype(bool)
    detected = np.isfinite(onset_time[repaired])
    lead_times = (fleet.end - onset_time)[repaired][detected]
    # Time overlap of alarm-on time with the danger windows.
    repaired_row = fleet.repaired[fleet.row_vehicle]
    danger_start = np.maximum(fleet.time, fleet.end[fleet.row_vehicle] - horizon)
    danger = np.where(repaired_row, np.clip(fleet.time + fleet.duration - danger_start, 0.0,
                                            fleet.duration), 0.0)
    return AlarmSummary(int(detected.sum()), int(repaired.sum()), lead_times, false_alarms,
                        int(onset.sum()), exact_sum(np.where(state, fleet.duration, 0.0)),
                        exact_sum(fleet.duration), exact_sum(danger),
                        exact_sum(np.where(state, danger, 0.0)))


def off_threshold(tau_on: float, hysteresis: float) -> float:
    """``tau_off`` for a ``tau_on``: lower by the share ``hysteresis`` of it. Relative, because
    calibrated risks of rare failures are small numbers: a fixed gap would hold alarms for ever
    at low thresholds and barely at high ones."""
    return tau_on * (1.0 - hysteresis)


def sweep_counts(fleet: Fleet, risk: np.ndarray, thresholds: np.ndarray, hysteresis: float,
                 min_consecutive: int, horizon: float) -> np.ndarray:
    """Per ``tau_on`` (``tau_off`` from ``hysteresis``): the repairs detected and the false
    alarms, (thresholds, 2) int64; they add up over vehicles taken apart."""
    counts = np.zeros((len(thresholds), 2), dtype=np.int64)
    repaired = fleet.repaired.astype(bool)
    for i, tau_on in enumerate(thresholds):
        state = alarm_state(fleet, risk, float(tau_on), off_threshold(float(tau_on), hysteresis),
                            min_consecutive)
        onset_time, _, false_alarms = detections(fleet, state, horizon)
        counts[i] = np.isfinite(onset_time[repaired]).sum(), false_alarms
    return counts


def sweep_curve(thresholds: np.ndarray, counts: np.ndarray, repairs: int, observed_time: float
                ) -> list[dict]:
    """Detection rate and false alarms per 1000 time units for each ``tau_on``, from the
    :func:`sweep_counts` of the whole fleet (its ``repairs`` and ``observed_time``)."""
    per_1000 = 1000.0 / max(observed_time, 1e-12)
    return [{"tau_on": float(tau_on), "detection_rate": int(detected) / repairs if repairs
             else None, "false_alarms_per_1000": int(false_alarms) * per_1000}
            for tau_on, (detected, false_alarms) in zip(thresholds, counts, strict=True)]


def sensitivity_at(curve: list[dict], fa_rates: tuple[float, ...] = FA_RATES
                   ) -> dict[str, float]:
    """Best detection rate among the thresholds whose false-alarm rate is at most each rate."""
    return {f"{rate:g}": max([p["detection_rate"] or 0.0 for p in curve
                              if p["false_alarms_per_1000"] <= rate], default=0.0)
            for rate in fa_rates}


def threshold_for(curve: list[dict], target_fa: float) -> float | None:
    """The ``tau_on`` with the most detections among those whose false-alarm rate is within
    the target (fewer false alarms, then the higher threshold, on ties)."""
    allowed = [p for p in curve if p["false_alarms_per_1000"] <= target_fa]
    if not allowed:
        return None
    return max(allowed, key=lambda p: (p["detection_rate"] or 0.0, -p["false_alarms_per_1000"],
                                       p["tau_on"]))["tau_on"]


RISK_SCALE = 10**6  # risks are counted rounded to 1e-6 for the threshold sweep


def risk_codes(risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The risks rounded to 1e-6, as integer codes (risk · 1e6) and how many have each: what
    :func:`risk_thresholds` needs of some vehicles, added up over buckets."""
    return np.unique(np.round(np.asarray(risk, dtype=np.float64) * RISK_SCALE).astype(np.int64),
                     return_counts=True)


def risk_thresholds(counts: np.ndarray, points: int = 150) -> np.ndarray:
    """Candidate ``tau_on`` values spread over the upper part of the risk distribution: its
    quantiles 0.5 to 0.9995 (linear between neighbouring ranks, rounded to 1e-6), from
    ``counts``, the number of risks at each code of :func:`risk_codes` (counts[code], code 0
    to 1e6)."""
    cumulative = np.cumsum(counts)
    position = (cumulative[-1] - 1) * np.linspace(0.5, 0.9995, points)
    below = np.floor(position)
    low = np.searchsorted(cumulative, below, side="right")  # the code at rank ``below``
    high = np.searchsorted(cumulative, np.minimum(below + 1, cumulative[-1] - 1), side="right")
    return np.unique(np.round((low + (position - below) * (high - low)) / RISK_SCALE, 6))


def alarm_thresholds(curve: list[dict], settings: dict) -> tuple[float, float, float | None]:
    """``tau_on`` and ``tau_off`` of ``settings`` (``params.fleet``): ``tau_on: target`` is the
    one of the sweep's ``curve`` that ``target_fa`` picks (the highest swept when none keeps
    false alarms within it), ``tau_off: auto`` lower by ``hysteresis``; and the picked one."""
    picked = threshold_for(curve, settings["target_fa"])
    tau_on = picked if settings["tau_on"] == "target" else float(settings["tau_on"])
    if tau_on is None:  # no threshold keeps false alarms within the target
        tau_on = max(p["tau_on"] for p in curve)
    tau_off = (off_threshold(tau_on, settings["hysteresis"]) if settings["tau_off"] == "auto"
               else float(settings["tau_off"]))
    return tau_on, min(tau_off, tau_on), picked
