-- Nothing looks snapshots up by scene (the registry indexes live attempts in memory, the
-- cluster record by its own key): the index only cost every snapshot insert a page.
DROP INDEX IF EXISTS attempt_snapshots_scene;
