"""The analyzer: variability metrics, period and class of each star's light curve.

Stateless and idempotent (the same light curve gives the same result), so analyzers scale by
running more of them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tess_ffi.shared.bus import Delivery
from tess_ffi.shared.contracts import StarLightCurve, StarVariability, Topic
from tess_ffi.shared.lightcurve import corrected_flux
from tess_ffi.shared.runtime import Service

from .variability import analyze_lightcurve

__all__ = ["AnalyzerService", "analyze_message"]


def analyze_message(message: StarLightCurve) -> dict[str, Any]:
    """Metrics of one light-curve message as a plain dict (the variability table's row).

    The corrected flux is analysed when the message has it (the common mode, which would
    otherwise look like variability, removed); its errors scale with it."""
    flux, flux_err = corrected_flux(message.flux, message.flux_err, message.flux_corrected)
    result = analyze_lightcurve(message.btjd, flux, flux_err, message.quality)
    return result.to_dict()


class AnalyzerService(Service):
    name = "analyzer"

    async def start(self) -> None:
        await self.subscribe(Topic.LIGHTCURVES, self.on_lightcurve, prefetch=4)

    async def on_lightcurve(self, message: Any, delivery: Delivery) -> None:
        assert isinstance(message, StarLightCurve)
        metrics = await asyncio.to_thread(analyze_message, message)
        await self.bus.publish(
            StarVariability(
                job=message.job, star_id=message.star_id, n_stars=message.n_stars,
                ra=message.ra, dec=message.dec, tmag=message.tmag, metrics=metrics,
            )
        )
        self.counters["stars_analyzed"] += 1
        status = self.job_status(message.job)
        status["analyzed"] = status.get("analyzed", 0) + 1
        status["n_stars"] = message.n_stars
