/* Private to db/: embedded migrations and the test hooks of db/pg.c. */
#ifndef VACS_DB_DB_INT_H
#define VACS_DB_DB_INT_H

/* One numbered SQL file of db/migrations, embedded by scripts/embed-migrations. */
struct db_migration {
	unsigned version; /* NNN of NNN_name.sql */
	const char *name; /* the file name, for error messages */
	const char *sql;  /* one or more statements, run in the migration transaction */
};

extern const struct db_migration db_migrations[];
extern const unsigned db_n_migrations;

/* Test hooks; call before db_init. They stay set until changed (NULL / 0 = default). */
/* An extra migration applied after the embedded ones (a broken one, in tests). */
void db_test_extra_migration(const struct db_migration *m);
/* Spool lines replayed per transaction (0 = the default, 256). */
void db_test_replay_batch(unsigned lines);

#endif
