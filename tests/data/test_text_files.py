"""The local-files source on the real books: three encodings, CRLF, Gutenberg boilerplate, splitting."""

from __future__ import annotations

import shutil

import pytest

from data.documents import SkipReport
from data.text_cleanup import decode_text, normalize_newlines, split_documents, strip_gutenberg
from data.text_files import NoTextFiles, TextFilesReader


@pytest.fixture(scope="module")
def book_documents(books):
    report = SkipReport("local-files")
    documents = list(TextFilesReader([str(books)]).documents(report))
    return documents, report


def by_book(documents):
    grouped: dict[str, list[str]] = {}
    for doc in documents:
        grouped.setdefault(doc.id.split("#")[0], []).append(doc.text)
    return grouped


def test_every_book_is_read_and_split_into_documents(books, book_documents):
    documents, report = book_documents
    grouped = by_book(documents)
    assert sorted(grouped) == sorted(p.name for p in books.glob("*.txt"))
    assert sum(report.counts.values()) == 0  # nothing skipped
    # Long books become many documents (chapters / paragraph groups), so a val split by document works.
    assert len(grouped["melville_moby-dick_pg2701.txt"]) > 50
    assert all(len(texts) >= 3 for texts in grouped.values())
    assert len({doc.id for doc in documents}) == len(documents)


@pytest.mark.parametrize(
    "name, encoding",
    [
        ("austen_pride-and-prejudice_pg1342.txt", "utf-8-sig"),  # UTF-8 with BOM
        ("machiavelli_the-prince_pg1232.txt", "utf-8"),
        ("doyle_adventures-of-sherlock-holmes_pg1661.latin1.txt", "latin-1"),
        ("dutch_ontboezemingen_pg24675.latin1.txt", "latin-1"),
    ],
)
def test_each_encoding_decodes_to_the_true_text(books, book_documents, name, encoding):
    documents, _ = book_documents
    raw = (books / name).read_bytes()
    truth, _ = strip_gutenberg(normalize_newlines(raw.decode(encoding)))
    text = "\n\n".join(by_book(documents)[name])
    assert "\ufeff" not in text and "\r" not in text and "\ufffd" not in text
    assert "Ã" not in text  # UTF-8 read as Latin-1 would show up as Ã©, Ã«, ...
    # Same words in the same order as a correct decoding (our documents re-flow hard line wraps).
    assert text.split() == truth.split()


def test_latin1_fallback_is_logged(book_documents):
    _, report = book_documents
    fallbacks = [note for note in report.notes if "not valid UTF-8" in note]
    assert len(fallbacks) == 4 and all("latin1" in note for note in fallbacks)


def test_gutenberg_header_and_footer_are_gone(book_documents):
    documents, _ = book_documents
    grouped = by_book(documents)
    for name, texts in grouped.items():
        joined = "\n".join(texts)
        for boilerplate in ("This eBook is for the use of anyone anywhere", "*** START OF", "*** END OF",
                            "End of the Project Gutenberg", "End of Project Gutenberg", "FULL LICENSE"):
            assert boilerplate not in joined, (name, boilerplate)
    assert grouped["austen_pride-and-prejudice_pg1342.txt"][0].startswith("PRIDE AND PREJUDICE")
    assert "It is a truth universally acknowledged" in grouped["austen_pride-and-prejudice_pg1342.txt"][0]


def test_hard_wraps_joined_and_paragraphs_kept():
    text = "CHAPTER I.\n\nIt was a dark\nand stormy night.\n\nThe rain fell.\n"
    assert split_documents(text) == ["CHAPTER I.\n\nIt was a dark and stormy night.\n\nThe rain fell."]


def test_chapters_start_documents_once_long_enough():
    chapter = "CHAPTER {}.\n\n" + "\n\n".join(["word " * 100] * 6)
    docs = split_documents("\n\n".join(chapter.format(i) for i in range(4)), min_chars=2000, max_chars=16000)
    assert len(docs) == 4 and all(doc.startswith("CHAPTER") for doc in docs)


def test_empty_and_binary_files_are_skipped_with_reasons(tmp_path, books):
    shutil.copy(books / "paine_common-sense_pg147.txt", tmp_path)
    (tmp_path / "empty.txt").write_text("  \n\n")
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    (tmp_path / "notes.md").write_text("not a .txt file: ignored")
    report = SkipReport("local-files")
    documents = list(TextFilesReader([str(tmp_path)]).documents(report))
    assert documents and all(doc.id.startswith("paine_common-sense") for doc in documents)
    assert dict(report.counts) == {"empty": 1, "undecodable": 1}
    assert set(report.examples) == {"empty", "undecodable"}


def test_utf16_with_bom_decodes():
    assert decode_text("Grüße\r\n".encode("utf-16")).text == "Grüße\r\n"


def test_no_files_is_a_clear_error(tmp_path):
    with pytest.raises(NoTextFiles, match=r"found no \.txt files.*stages\.foundation\.files"):
        _ = TextFilesReader([str(tmp_path / "missing")], stage="foundation").files


def test_globs_and_single_files(books):
    reader = TextFilesReader([str(books / "*.latin1.txt"), str(books / "paine_common-sense_pg147.txt")])
    assert sorted(p.name for p in reader.files) == sorted(
        [p.name for p in books.glob("*.latin1.txt")] + ["paine_common-sense_pg147.txt"]
    )


def test_fingerprint_follows_content_not_location(tmp_path, books):
    for name in ("paine_common-sense_pg147.txt", "carroll_alice-in-wonderland_pg11.txt"):
        shutil.copy(books / name, tmp_path / name)
    here = TextFilesReader([str(tmp_path)]).fingerprint()
    moved = tmp_path / "moved"
    moved.mkdir()
    for path in tmp_path.glob("*.txt"):
        shutil.copy(path, moved / path.name)
    assert TextFilesReader([str(moved)]).fingerprint() == here
    with open(moved / "paine_common-sense_pg147.txt", "a") as handle:
        handle.write("one more line\n")
    assert TextFilesReader([str(moved)]).fingerprint() != here
