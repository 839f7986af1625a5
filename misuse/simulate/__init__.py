"""A deterministic generator of a small IoT site, with injected attacks and their ground truth.

A dozen devices (cameras, thermostats, sensors, locks, plugs, a hub and an MQTT broker) with
daily rhythms, four people operating them through an app and over SSH, some clean days for a
model to learn from, then a day with attacks (botnet, brute force, exfiltration,
impersonation, insider and inadvertent misuse). Everything is drawn from ``numpy`` generators
seeded by ``seed``: the same parameters give byte-identical files.

Examples
--------
>>> from misuse.simulate import simulate_site
>>> site = simulate_site(seed=3, days=2, attacks=["exfiltration"], scale=0.2)
>>> site.truth.loc[0, "type"]
'exfiltration'
"""

from misuse.simulate.attacks import ATTACKS
from misuse.simulate.generate import TRUTH_COLUMNS, SimulatedSite, SiteParams, simulate_site
from misuse.simulate.writers import write_site

__all__ = ["ATTACKS", "TRUTH_COLUMNS", "SimulatedSite", "SiteParams", "simulate_site", "write_site"]
