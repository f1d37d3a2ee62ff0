"""Settings of the web source (the `scrape:` section of a run config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt


class ScrapeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    contact_url: str = Field(
        "https://github.com/curriculum-gpt/curriculum-gpt",
        description="Where site owners learn who crawls them; sent in the User-Agent.",
    )
    max_concurrency: PositiveInt = Field(8, description="Requests in flight across all hosts.")
    per_host: PositiveInt = Field(2, description="Requests in flight per host.")
    per_host_delay: float = Field(1.0, ge=0, description="Seconds between requests to one host (jittered).")
    connect_timeout: PositiveFloat = Field(10.0)
    read_timeout: PositiveFloat = Field(30.0)
    url_deadline: PositiveFloat = Field(120.0, description="Overall seconds one URL may take, retries included.")
    retries: int = Field(3, ge=0, description="Retries on 429, 5xx and connection errors.")
    max_redirects: int = Field(5, ge=0)
    max_html_bytes: PositiveInt = Field(10_000_000, description="Cap on a decoded HTML body.")
    max_pdf_bytes: PositiveInt = Field(50_000_000, description="Cap on a decoded PDF body.")
    extract_timeout: PositiveFloat = Field(30.0, description="Seconds one document's extraction may take.")
    extract_memory_mb: PositiveInt = Field(1024, description="Memory cap of the extraction worker.")
    max_pdf_pages: PositiveInt = Field(500)
    min_chars: PositiveInt = Field(200, description="Documents with fewer extracted characters are dropped.")
