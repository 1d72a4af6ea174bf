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

from dataclasses import dataclass

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


@dataclass
class AlarmSummary:
    """What an alarm setting did over the fleet."""

    detected: np.ndarray  # per repaired vehicle
    lead_times: np.ndarray  # of the detected repairs
    false_alarms: int
    onsets: int
    alarm_time: float
    observed_time: float
    danger_time: float
    danger_alarm_time: float

    def metrics(self) -> dict:
        per_1000 = 1000.0 / max(self.observed_time, 1e-12)
        quartiles = (np.percentile(self.lead_times, [25, 50, 75]).tolist()
                     if len(self.lead_times) else [None] * 3)
        return {
            "repairs": len(self.detected),
            "detection_rate": float(self.detected.mean()) if len(self.detected) else None,
            "false_alarms": self.false_alarms,
            "false_alarms_per_1000": self.false_alarms * per_1000,
            "lead_time_median": quartiles[1],
            "lead_time_quartiles": [quartiles[0], quartiles[2]],
            "flicker_onsets_per_1000_alarm_time": (
                self.onsets * 1000.0 / self.alarm_time if self.alarm_time else 0.0),
            "alarm_time_share": self.alarm_time / max(self.observed_time, 1e-12),
            "time_precision": (self.danger_alarm_time / self.alarm_time
                               if self.alarm_time else None),
            "time_recall": (self.danger_alarm_time / self.danger_time
                            if self.danger_time else None),
        }


def summarise(fleet: Fleet, state: np.ndarray, horizon: float) -> AlarmSummary:
    """Episodes, detections, lead times, false alarms and time overlap of one alarm state."""
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
    on_at_last = state[last_rows]
    onset_of_last = fleet.time[np.maximum(episode_start[last_rows], 0)]
    onset_time = np.where(on_at_last, onset_of_last, first_in_window)
    repaired = fleet.repaired.astype(bool)
    detected = np.isfinite(onset_time[repaired])
    lead_times = (fleet.end - onset_time)[repaired][detected]
    # Time overlap of alarm-on time with the danger windows.
    danger_start = np.maximum(fleet.time, repair_time - horizon)
    danger = np.where(repaired_row, np.clip(end_time - danger_start, 0.0, fleet.duration), 0.0)
    on_time = np.where(state, fleet.duration, 0.0)
    return AlarmSummary(detected, lead_times, false_alarms, int(onset.sum()),
                        float(on_time.sum()), float(fleet.duration.sum()), float(danger.sum()),
                        float(np.where(state, danger, 0.0).sum()))


def off_threshold(tau_on: float, hysteresis: float) -> float:
    """``tau_off`` for a ``tau_on``: lower by the share ``hysteresis`` of it. Relative, because
    calibrated risks of rare failures are small numbers: a fixed gap would hold alarms for ever
    at low thresholds and barely at high ones."""
    return tau_on * (1.0 - hysteresis)


def threshold_sweep(fleet: Fleet, risk: np.ndarray, thresholds: np.ndarray, hysteresis: float,
                    min_consecutive: int, horizon: float) -> list[dict]:
    """Detection rate and false alarms per 1000 time units for each ``tau_on``."""
    curve = []
    for tau_on in thresholds:
        state = alarm_state(fleet, risk, float(tau_on), off_threshold(float(tau_on), hysteresis),
                            min_consecutive)
        metrics = summarise(fleet, state, horizon).metrics()
        curve.append({"tau_on": float(tau_on), "detection_rate": metrics["detection_rate"],
                      "false_alarms_per_1000": metrics["false_alarms_per_1000"]})
    return curve


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


def risk_thresholds(risk: np.ndarray, points: int = 150) -> np.ndarray:
    """Candidate ``tau_on`` values spread over the upper part of the risk distribution."""
    return np.unique(np.round(np.quantile(risk, np.linspace(0.5, 0.9995, points)), 6))


def fleet_report(fleet: Fleet, risk: np.ndarray, settings: dict, horizon: float
                 ) -> tuple[dict, list[dict], np.ndarray]:
    """Metrics of one model's risk trajectories (``settings`` is ``params.fleet``).

    A sweep of ``tau_on`` gives the detection / false-alarm curve, the sensitivity at fixed
    false-alarm rates, and the ``tau_on`` that ``target_fa`` picks; the alarms are then scored
    at ``settings["tau_on"]`` (``target``: the picked one) and ``tau_off`` (``auto``: from
    ``hysteresis``). Also returns the sweep and the lead times of those alarms.
    """
    curve = threshold_sweep(fleet, risk, risk_thresholds(risk), settings["hysteresis"],
                            settings["min_consecutive"], horizon)
    picked = threshold_for(curve, settings["target_fa"])
    tau_on = picked if settings["tau_on"] == "target" else float(settings["tau_on"])
    if tau_on is None:  # no threshold keeps false alarms within the target
        tau_on = max(p["tau_on"] for p in curve)
    tau_off = (off_threshold(tau_on, settings["hysteresis"]) if settings["tau_off"] == "auto"
               else float(settings["tau_off"]))
    summary = summarise(fleet, alarm_state(fleet, risk, tau_on, min(tau_off, tau_on),
                                           settings["min_consecutive"]), horizon)
    report = {"tau_on": tau_on, "tau_off": min(tau_off, tau_on),
              "tau_on_picked_for_target_fa": picked, **summary.metrics(),
              "sensitivity_at_false_alarms_per_1000": sensitivity_at(curve)}
    return report, curve, summary.lead_times
