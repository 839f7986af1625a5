"""The simulated site: its devices, their daily rhythms and their ordinary network traffic.

A small smart building on 192.168.1.0/24. The hub (192.168.1.1) is the gateway, the DNS resolver
and the admins' SSH host; the MQTT broker is 192.168.1.2. External services use the documentation
ranges (RFC 5737): vendor clouds in 198.51.100.0/24, the NTP server in 192.0.2.0/24; attackers
are drawn from 203.0.113.0/24 (and, for rare peers, 192.0.2.0/24). Cameras, plugs and the hub
announce themselves by SSDP (239.255.255.250:1900) and mDNS (224.0.0.251:5353).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from misuse.simulate.flows import DAY, flow_block, lognormal, periodic_times, poisson_times

HUB_IP = "192.168.1.1"
BROKER_IP = "192.168.1.2"
RESOLVER_IP = HUB_IP
NTP_IP = "192.0.2.123"
MQTT_PORT = 1883
SSDP_IP = "239.255.255.250"
MDNS_IP = "224.0.0.251"


@dataclass(frozen=True)
class Device:
    """One device of the site.

    Parameters
    ----------
    name, ip, role:
        Host name, address and what it is (``camera``, ``thermostat``...).
    clouds:
        Vendor cloud addresses it talks HTTPS to.
    mqtt_period:
        Seconds between telemetry publishes to the broker; 0 for none.
    cloud_rate:
        Expected HTTPS connections per hour at full activity.
    upload_median:
        Median bytes sent per cloud connection.
    """

    name: str
    ip: str
    role: str
    clouds: tuple[str, ...] = ()
    mqtt_period: float = 0.0
    cloud_rate: float = 2.0
    upload_median: float = 2000.0


DEVICES: tuple[Device, ...] = (
    Device("hub", HUB_IP, "hub", ("198.51.100.50",), 0.0, 2.0, 3000.0),
    Device("broker", BROKER_IP, "broker", (), 0.0, 0.0),
    Device("cam-front", "192.168.1.30", "camera", ("198.51.100.10", "198.51.100.11"), 0.0, 6.0, 1.5e6),
    Device("cam-garden", "192.168.1.31", "camera", ("198.51.100.10", "198.51.100.11"), 0.0, 4.0, 1.5e6),
    Device("thermo-living", "192.168.1.40", "thermostat", ("198.51.100.40",), 60.0, 4.0, 1500.0),
    Device("thermo-bedroom", "192.168.1.41", "thermostat", ("198.51.100.40",), 60.0, 4.0, 1500.0),
    Device("sensor-door", "192.168.1.50", "sensor", (), 120.0, 0.0),
    Device("sensor-motion", "192.168.1.51", "sensor", (), 60.0, 0.0),
    Device("sensor-air", "192.168.1.52", "sensor", (), 60.0, 0.0),
    Device("lock-front", "192.168.1.60", "lock", ("198.51.100.20",), 300.0, 1.0, 1200.0),
    Device("lock-back", "192.168.1.61", "lock", ("198.51.100.20",), 300.0, 1.0, 1200.0),
    Device("plug-kitchen", "192.168.1.70", "plug", ("198.51.100.30",), 120.0, 6.0, 900.0),
    Device("plug-tv", "192.168.1.71", "plug", ("198.51.100.30",), 120.0, 6.0, 900.0),
)

# Share of full activity by hour of day (UTC), for people being home and awake.
HOME_WEEKDAY = np.array(
    [
        *(0.05, 0.03, 0.02, 0.02, 0.02, 0.05, 0.3, 0.8, 0.7, 0.3, 0.2, 0.2),
        *(0.25, 0.2, 0.2, 0.25, 0.35, 0.6, 0.9, 1.0, 0.95, 0.8, 0.5, 0.2),
    ]
)
HOME_WEEKEND = np.array(
    [
        *(0.1, 0.05, 0.03, 0.02, 0.02, 0.02, 0.05, 0.2, 0.5, 0.8, 0.9, 0.9),
        *(0.85, 0.8, 0.8, 0.8, 0.85, 0.9, 0.95, 1.0, 0.95, 0.85, 0.6, 0.3),
    ]
)
# Devices that follow the occupants (motion-triggered clips, plugs switched by people).
_FOLLOWS_PEOPLE = ("camera", "plug", "lock")


def device_table() -> pd.DataFrame:
    """The site inventory: one row per device (name, ip, role, clouds)."""
    return pd.DataFrame(
        {
            "name": [d.name for d in DEVICES],
            "ip": [d.ip for d in DEVICES],
            "role": [d.role for d in DEVICES],
            "clouds": [" ".join(d.clouds) for d in DEVICES],
        }
    )


def device_by_name(name: str) -> Device:
    """Look a device up by name."""
    for d in DEVICES:
        if d.name == name:
            return d
    raise KeyError(name)


def benign_device_flows(rng: np.random.Generator, t0: float, days: int, scale: float) -> pd.DataFrame:
    """All ordinary device traffic of the site over ``days`` days from ``t0`` (midnight UTC).

    Telemetry to the broker, HTTPS to vendor clouds (following the occupants' daily rhythm for
    cameras, plugs and locks), DNS, NTP, plus the occasional benign oddity: a firmware download,
    a reboot (silence then a burst of DNS/NTP), a window of failing DNS, a contact with a new
    CDN address.
    """
    t1 = t0 + days * DAY
    blocks: list[pd.DataFrame] = []
    for dev in DEVICES:
        if dev.mqtt_period > 0:
            ts = periodic_times(rng, t0, t1, dev.mqtt_period / scale, jitter=0.8, drop=0.01)
            n = ts.size
            blocks.append(
                flow_block(
                    rng,
                    ts,
                    orig_h=dev.ip,
                    resp_h=BROKER_IP,
                    resp_p=MQTT_PORT,
                    proto="tcp",
                    service="mqtt",
                    duration=lognormal(rng, 0.02, 0.5, n),
                    orig_bytes=np.round(lognormal(rng, 95.0, 0.15, n)),
                    resp_bytes=np.full(n, 8.0),
                )
            )
        if dev.clouds and dev.cloud_rate > 0:
            follows = dev.role in _FOLLOWS_PEOPLE
            wk = dev.cloud_rate * scale * (HOME_WEEKDAY if follows else np.full(24, 0.6))
            we = dev.cloud_rate * scale * (HOME_WEEKEND if follows else np.full(24, 0.6))
            ts = poisson_times(rng, t0, days, wk, weekend_rate=we)
            n = ts.size
            blocks.append(
                flow_block(
                    rng,
                    ts,
                    orig_h=dev.ip,
                    resp_h=np.array(dev.clouds, dtype=object)[rng.integers(0, len(dev.clouds), n)],
                    resp_p=443,
                    proto="tcp",
                    service="ssl",
                    duration=lognormal(rng, 12.0 if dev.role == "camera" else 0.6, 0.7, n),
                    orig_bytes=lognormal(rng, dev.upload_median, 0.8, n),
                    resp_bytes=lognormal(rng, 4500.0, 0.5, n),
                    conn_state=np.where(rng.random(n) < 0.02, "RSTO", "SF"),
                )
            )
        blocks.append(_dns(rng, dev, t0, t1, scale))
        blocks.extend(_discovery(rng, dev, t0, t1, scale))
        ts = periodic_times(rng, t0, t1, 1024.0 / scale, jitter=20.0, drop=0.02)
        blocks.append(
            flow_block(
                rng,
                ts,
                orig_h=dev.ip,
                resp_h=NTP_IP,
                resp_p=123,
                orig_p=123,
                proto="udp",
                service="ntp",
                duration=lognormal(rng, 0.03, 0.4, ts.size),
                orig_bytes=48.0,
                resp_bytes=48.0,
            )
        )
    blocks.extend(_oddities(rng, t0, days))
    flows = pd.concat(blocks, ignore_index=True)
    return _drop_reboot_gaps(flows)


def _dns(rng: np.random.Generator, dev: Device, t0: float, t1: float, scale: float) -> pd.DataFrame:
    ts = periodic_times(rng, t0, t1, 600.0 / scale, jitter=90.0)
    n = ts.size
    return flow_block(
        rng,
        ts,
        orig_h=dev.ip,
        resp_h=RESOLVER_IP,
        resp_p=53,
        proto="udp",
        service="dns",
        duration=lognormal(rng, 0.004, 0.6, n),
        orig_bytes=np.round(lognormal(rng, 38.0, 0.15, n)),
        resp_bytes=np.round(lognormal(rng, 90.0, 0.3, n)),
        conn_state=np.where(rng.random(n) < 0.003, "S0", "SF"),
    )


def _discovery(rng: np.random.Generator, dev: Device, t0: float, t1: float, scale: float) -> list[pd.DataFrame]:
    """SSDP and mDNS announcements: unanswered multicast (``S0``), as in real home captures."""
    out: list[pd.DataFrame] = []
    if dev.role in ("camera", "plug", "hub"):
        ts = periodic_times(rng, t0, t1, 900.0 / scale, jitter=30.0)
        out.append(
            flow_block(
                rng,
                ts,
                orig_h=dev.ip,
                orig_p=1900,
                resp_h=SSDP_IP,
                resp_p=1900,
                proto="udp",
                conn_state="S0",
                duration=rng.uniform(0.5, 3.0, ts.size),
                orig_bytes=rng.integers(1, 4, ts.size) * 330.0,
            )
        )
    if dev.role in ("camera", "hub"):
        ts = periodic_times(rng, t0, t1, 300.0 / scale, jitter=20.0)
        out.append(
            flow_block(
                rng,
                ts,
                orig_h=dev.ip,
                orig_p=5353,
                resp_h=MDNS_IP,
                resp_p=5353,
                proto="udp",
                service="dns",
                conn_state="S0",
                duration=np.nan,
                orig_bytes=np.round(lognormal(rng, 180.0, 0.3, ts.size)),
            )
        )
    return out


def _oddities(rng: np.random.Generator, t0: float, days: int) -> list[pd.DataFrame]:
    """Rare but benign events, spread over all days (the attack day too)."""
    out: list[pd.DataFrame] = []
    with_clouds = [d for d in DEVICES if d.clouds]
    # firmware downloads: about one every two days, from the vendor's cloud
    n_fw = max(1, int(rng.poisson(days / 2)))
    for _ in range(n_fw):
        dev = with_clouds[int(rng.integers(0, len(with_clouds)))]
        t = t0 + rng.uniform(0, days * DAY)
        out.append(
            flow_block(
                rng,
                np.array([t]),
                orig_h=dev.ip,
                resp_h=dev.clouds[0],
                resp_p=443,
                proto="tcp",
                service="ssl",
                duration=rng.uniform(20, 120, 1),
                orig_bytes=lognormal(rng, 20_000.0, 0.3, 1),
                resp_bytes=lognormal(rng, 25e6, 0.5, 1),
            )
        )
    # DNS outage windows: a few minutes of unanswered queries from several devices
    for _ in range(int(rng.poisson(days / 2))):
        t = t0 + rng.uniform(0, days * DAY)
        n = int(rng.integers(8, 30))
        ips = np.array([d.ip for d in DEVICES[2:]], dtype=object)[rng.integers(0, len(DEVICES) - 2, n)]
        out.append(
            flow_block(
                rng,
                np.sort(t + rng.uniform(0, 300, n)),
                orig_h=ips,
                resp_h=RESOLVER_IP,
                resp_p=53,
                proto="udp",
                service="dns",
                conn_state="S0",
                duration=np.nan,
                orig_bytes=np.round(lognormal(rng, 38.0, 0.15, n)),
            )
        )
    # new CDN addresses: a device talks to a never-seen cloud address for a while
    for _ in range(int(rng.poisson(days))):
        dev = with_clouds[int(rng.integers(0, len(with_clouds)))]
        t = t0 + rng.uniform(0, days * DAY)
        n = int(rng.integers(1, 6))
        out.append(
            flow_block(
                rng,
                np.sort(t + rng.uniform(0, 900, n)),
                orig_h=dev.ip,
                resp_h=f"198.51.100.{int(rng.integers(100, 200))}",
                resp_p=443,
                proto="tcp",
                service="ssl",
                duration=lognormal(rng, 2.0, 0.8, n),
                orig_bytes=lognormal(rng, max(dev.upload_median, 3000.0), 0.8, n),
                resp_bytes=lognormal(rng, 30_000.0, 1.0, n),
            )
        )
    # vendor cloud outages: a device's connection attempts go unanswered for a few minutes
    for _ in range(int(rng.poisson(days / 2))):
        dev = with_clouds[int(rng.integers(0, len(with_clouds)))]
        t = t0 + rng.uniform(0, days * DAY)
        n = int(rng.integers(5, 20))
        out.append(
            flow_block(
                rng,
                np.sort(t + rng.uniform(0, 600, n)),
                orig_h=dev.ip,
                resp_h=dev.clouds[0],
                resp_p=443,
                proto="tcp",
                conn_state="S0",
                duration=rng.uniform(0.0, 7.0, n),
            )
        )
    # reboots: after the gap (dropped later), a burst of DNS + NTP + cloud login
    for _ in range(int(rng.poisson(days / 2))):
        dev = DEVICES[int(rng.integers(2, len(DEVICES)))]
        t = t0 + rng.uniform(0, days * DAY)
        out.append(
            flow_block(
                rng,
                t + np.array([0.5, 0.7, 1.1, 1.4]),
                orig_h=dev.ip,
                resp_h=RESOLVER_IP,
                resp_p=53,
                proto="udp",
                service="dns",
                duration=lognormal(rng, 0.004, 0.5, 4),
                orig_bytes=40.0,
                resp_bytes=110.0,
            ).assign(reboot_gap=rng.uniform(120, 600))
        )
    return out


def _drop_reboot_gaps(flows: pd.DataFrame) -> pd.DataFrame:
    """Remove a rebooting device's flows during the silence that precedes its restart burst."""
    if "reboot_gap" not in flows.columns:
        return flows
    restarts = flows.loc[flows["reboot_gap"].notna()].groupby("orig_h")
    keep = np.ones(len(flows), dtype=bool)
    for ip, grp in restarts:
        t_up = float(grp["ts"].min())
        gap = float(grp["reboot_gap"].iloc[0])
        quiet = (flows["orig_h"].to_numpy() == ip) & (flows["ts"].to_numpy() >= t_up - gap)
        quiet &= flows["ts"].to_numpy() < t_up
        keep &= ~quiet
    return flows.loc[keep].drop(columns="reboot_gap").reset_index(drop=True)


__all__ = [
    "BROKER_IP",
    "DEVICES",
    "HUB_IP",
    "NTP_IP",
    "RESOLVER_IP",
    "Device",
    "benign_device_flows",
    "device_by_name",
    "device_table",
]
