-- Nothing looks snapshots up by scene (the registry indexes live attempts in memory, the
-- cluster record by its own key): the index only cost every snapshot insert a page.
DROP INDEX attempt_snapshots_scene ON attempt_snapshots;
