"""Settings of the web source (the `scrape:` section of a run config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

from data.web.addresses import parse_allow_entry


class ScrapeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    contact_url: str = Field(
        "https://github.com/curriculum-gpt/curriculum-gpt",
        description="Where site owners learn who crawls them; sent in the User-Agent.",
    )
    max_concurrency: PositiveInt = Field(8, description="Requests in flight across all hosts.")
    per_host: PositiveInt = Field(
        2, description="Requests in flight per host (1 when the host's robots.txt sets a Crawl-delay)."
    )
    per_host_delay: float = Field(
        1.0, ge=0, description="Seconds between the starts of two requests to one host (jittered up to +50%)."
    )
    max_crawl_delay: float = Field(
        60.0,
        ge=0,
        description="A host whose robots.txt asks for a longer Crawl-delay is skipped (crawl-delay-too-long) "
        "rather than crawled faster than it asks.",
    )
    max_retry_after: float = Field(
        120.0,
        ge=0,
        description="Longest Retry-After (429/503) we wait; a longer one fails the URL instead of stalling the stage.",
    )
    connect_timeout: PositiveFloat = Field(10.0, description="Seconds to open a connection (DNS included).")
    read_timeout: PositiveFloat = Field(30.0, description="Seconds between two received chunks.")
    url_deadline: PositiveFloat = Field(
        120.0,
        description="Overall seconds one URL may take from its first request, retries, redirects and a "
        "slow-drip body included.",
    )
    retries: int = Field(3, ge=0, description="Retries on 429, 5xx and connection errors (never on other 4xx).")
    backoff: float = Field(
        0.5, ge=0, description="Seconds before the first retry; doubled per retry, jittered, at most backoff_max."
    )
    backoff_max: float = Field(30.0, ge=0, description="Longest wait between two retries (Retry-After aside).")
    max_redirects: int = Field(5, ge=0, description="Redirects followed per URL, only to http/https.")
    max_html_bytes: PositiveInt = Field(10_000_000, description="Cap on a decoded HTML body.")
    max_pdf_bytes: PositiveInt = Field(50_000_000, description="Cap on a decoded PDF body.")
    extract_timeout: PositiveFloat = Field(30.0, description="Seconds one document's extraction may take.")
    extract_memory_mb: PositiveInt = Field(1024, description="Memory cap of each extraction worker.")
    extract_workers: PositiveInt | None = Field(
        None,
        description="Sandboxed extraction workers of a stage, each a process with the caps above; the documents "
        "and their order are the same whatever the number. Default: the cores of the machine that runs it.",
    )
    batch_inputs: PositiveInt = Field(
        256,
        description="On a Dask task runner, a stage's inputs are fetched and extracted in batches of about this "
        "many, each a task (fetch-<stage>-<i>/<n>) on any worker; a host's URLs are never split. The documents are "
        "the same whatever the number.",
    )
    max_pdf_pages: PositiveInt = Field(
        500, description="PDFs with more pages are skipped (too-many-pages): a bound against hostile files."
    )
    min_chars: PositiveInt = Field(200, description="Documents with fewer extracted characters are dropped.")
    allow_private: bool | list[str] = Field(
        False,
        description="Addresses that are not public (loopback, private, link-local such as cloud metadata, CGNAT, "
        "multicast, reserved) are refused (address-not-allowed), also when reached by a redirect or a DNS name. "
        "For an intranet or a test server: true allows them all, or list host names and networks, "
        "e.g. [127.0.0.2, 10.1.0.0/16, wiki.intranet].",
    )

    @field_validator("allow_private")
    @classmethod
    def _check_allow_private(cls, value: bool | list[str]) -> bool | list[str]:
        if isinstance(value, list):
            for entry in value:
                try:
                    parse_allow_entry(entry)
                except ValueError as error:
                    raise ValueError(f"scrape.allow_private: {error}") from None
        return value
