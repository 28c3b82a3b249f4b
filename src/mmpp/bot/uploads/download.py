"""Fetching a member's picture from Discord's CDN: only from the CDN, never more than the cap.

An interaction names its attachment's URL and claims its size; neither is trusted. The URL must
be on Discord's CDN (or the configured `DISCORD_CDN_BASE`, which tests and media proxies use), so
an interaction cannot make the bot fetch an internal address; redirects are not followed for the
same reason. The body is streamed and reading stops as soon as it passes `MAX_UPLOAD_BYTES`,
whatever the attachment claimed, and the whole fetch has a time limit.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
import yarl

from mmpp.errors import N_, UserFacingError
from mmpp.inference.model_files import image_limits
from mmpp.inference.preprocess import check_upload_size
from mmpp.logs import log_event
from mmpp.settings import Settings

log = logging.getLogger(__name__)

# Where Discord serves attachments and avatars.
DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
CHUNK = 64 * 1024


class DownloadRefused(UserFacingError):
    code = "download_refused"


class DownloadFailed(UserFacingError):
    code = "download_failed"


@dataclass(frozen=True)
class Origin:
    """An allowed place: scheme, host, port and a path prefix."""

    scheme: str
    host: str
    port: int | None
    path: str = "/"

    @classmethod
    def of(cls, base: str) -> Origin:
        url = yarl.URL(base)
        return cls(url.scheme, (url.host or "").lower(), url.port, url.path.rstrip("/") + "/")

    def allows(self, url: yarl.URL) -> bool:
        return (
            url.scheme == self.scheme
            and (url.host or "").lower() == self.host
            and url.port == self.port
            and (url.path + ("/" if not url.path.endswith("/") else "")).startswith(self.path)
            and "/../" not in url.path
        )


def allowed_origins(settings: Settings) -> tuple[Origin, ...]:
    origins = [Origin.of(f"https://{host}") for host in DISCORD_CDN_HOSTS]
    if settings.discord_cdn_base:
        origins.append(Origin.of(settings.discord_cdn_base))
    return tuple(origins)


class Downloader:
    """One per bot: an HTTP session for CDN fetches, opened on first use and closed at stop."""

    def __init__(self, settings: Settings) -> None:
        self.origins = allowed_origins(settings)
        self.limits = image_limits(settings)
        self.timeout_s = settings.download_timeout_s
        # Held from the download until the bytes are dropped (after the face search), by the caller.
        self.slots = asyncio.Semaphore(settings.max_concurrent_downloads)
        self._session: aiohttp.ClientSession | None = None

    def check(self, url: str) -> yarl.URL:
        """The URL, if it is one the bot may fetch; otherwise `DownloadRefused`."""
        try:
            parsed = yarl.URL(url)
        except (TypeError, ValueError):
            parsed = None
        if parsed is None or not parsed.is_absolute() or not any(o.allows(parsed) for o in self.origins):
            log_event(log, logging.WARNING, "download refused", host=parsed.host if parsed else None)
            raise DownloadRefused(
                N_("I can only read pictures uploaded to Discord. Attach the photo to the command itself.")
            )
        return parsed

    async def fetch(self, url: str) -> bytes:
        """The body of `url`, read up to the byte cap within the time limit."""
        target = self.check(url)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        body = bytearray()
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._session.get(target, allow_redirects=False) as response:
                    if response.status != 200:
                        raise DownloadFailed(
                            N_("Discord would not give me your picture (HTTP {status}). Please upload it again."),
                            status=response.status,
                        )
                    declared = response.content_length
                    if declared is not None:
                        check_upload_size(declared, self.limits)
                    async for chunk in response.content.iter_chunked(CHUNK):
                        body += chunk
                        # Stops reading as soon as the cap is passed: the rest is never fetched.
                        check_upload_size(len(body), self.limits)
        except TimeoutError:
            raise DownloadFailed(
                N_("Your picture took longer than {seconds} s to download. Please try again."),
                seconds=f"{self.timeout_s:g}",
            ) from None
        except aiohttp.ClientError as exc:
            # The exception's name is for the log; the member reads a sentence.
            log_event(log, logging.WARNING, "download failed", error=exc.__class__.__name__)
            raise DownloadFailed(
                N_("I couldn't download your picture: the connection to Discord failed. Please try again.")
            ) from None
        return bytes(body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

