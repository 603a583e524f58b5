-- A counter bumped in the transaction of every subscription change. Before matching a write,
-- a process compares it with the version its subscription cache was filled at and reloads
-- when it moved (postgres.py, mutate): a subscription acknowledged by one process is then
-- matched by every other one at once, without waiting for the LISTEN/NOTIFY announcement.
CREATE TABLE subversion(one boolean PRIMARY KEY DEFAULT true CHECK (one), v bigint NOT NULL);
INSERT INTO subversion(v) VALUES (0);
