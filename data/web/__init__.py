"""The `custom-scrape` source: polite fetching of pages and PDFs, and main-text extraction.

    source.py      WebReader, the Source a custom-scrape stage reads (documents in list order, crawl report)
    urls.py        URL lists and saved `paths:` checked line by line; redaction of user info; ScrapeError
    crawl.py       the fetching event loop in a background thread, results taken in list order
    fetch.py       Fetcher: robots, retries, redirects, deadline, size caps, sniffing for one URL
    transport.py   the httpx client whose connections go only to addresses checked first
    addresses.py   which addresses are public, and what scrape.allow_private opts in
    politeness.py  per-host gate (in flight + spacing), back-off, Retry-After
    robots.py      robots.txt rules, parsed and matched per RFC 9309
    robots_fetch.py robots.txt fetched once per origin (RFC 9309 status handling), with the origin's gate
    decode.py      Content-Encoding decoding bounded by the size cap (gzip bombs)
    sniff.py       HTML / PDF / refused, from the first bytes and the Content-Type
    cache.py       bodies on disk by URL with ETag / Last-Modified for conditional GETs
    report.py      the crawl report (flat rows) and counts by reason
    config.py      ScrapeConfig, the `scrape:` section of a run config

Nothing is imported here, so reading a run config (which needs only config.py) stays cheap.
"""
