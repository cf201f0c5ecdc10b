"""End-to-end pipelines, one per method: search → derive → train from scratch → export →
measure → result.json. Shared stages live in :mod:`nasforge.pipelines.common`."""
