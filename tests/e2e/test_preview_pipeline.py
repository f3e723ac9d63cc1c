"""Previews through the local stack: results under preview/ → pages under preview/ of the site."""

from __future__ import annotations

import re

from partybal import layout
from partybal.local import stack as localstack
from tests.e2e.conftest import small_experiment, upload_files


def site_text(stack, name: str) -> str:
    blob = stack.storage().bucket(stack.site_bucket).get_blob(name)
    assert blob is not None, name
    return blob.download_as_text()


def test_preview_and_real_page_of_one_slug_stay_apart(stack, sample_site):
    slug, preview_only = "e2e-preview-shared", "e2e-preview-only"
    fs, fs_only = layout.file_slug(slug), layout.file_slug(preview_only)
    since = localstack.now()
    upload_files(stack, small_experiment(slug, seed=1))
    preview_files = {**small_experiment(slug, seed=2), **small_experiment(preview_only, seed=3)}
    upload_files(stack, {layout.PREVIEW_PREFIX + name: data for name, data in preview_files.items()})

    main = stack.wait_for_site([fs], since, timeout=180)
    assert main.complete and main.ok == [fs], main.describe()
    prev = stack.wait_for_site([fs, fs_only], since, timeout=180, prefix=layout.PREVIEW_PREFIX)
    assert prev.complete and sorted(prev.ok) == sorted([fs, fs_only]), prev.describe()

    real, preview = site_text(stack, f"{fs}.html"), site_text(stack, f"preview/{fs}.html")
    assert "Preview — not final results" in preview and "expires on" in preview
    assert "Preview — not final results" not in real
    # each page's figures live under its own prefix and exist
    for page, prefix in ((real, ""), (preview, layout.PREVIEW_PREFIX)):
        srcs = re.findall(r'src="([^"]+\.png)"', page)
        assert srcs and all(s.startswith(f"{fs}_files/") for s in srcs)
        bucket = stack.storage().bucket(stack.site_bucket)
        assert all(bucket.get_blob(prefix + s) is not None for s in srcs)
    # the two renders read different inputs: the preview's come from preview/
    real_status, preview_status = stack.status_record(fs), stack.status_record(fs, layout.PREVIEW_PREFIX)
    assert all(not n.startswith("preview/") for n in real_status["input_generations"])
    assert all(n.startswith("preview/") for n in preview_status["input_generations"])

    main_index, preview_index = site_text(stack, "index.html"), site_text(stack, "preview/index.html")
    assert f'href="{fs}.html"' in main_index and fs_only not in main_index
    assert f'href="{fs}.html"' in preview_index and f'href="{fs_only}.html"' in preview_index
    assert "sample_new_tab_layout" not in preview_index
