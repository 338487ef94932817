-- Reports are pruned by the time the server received them
-- (Store.PruneReports); the inventory keeps each row's last report.
CREATE INDEX reports_received ON reports (received);
