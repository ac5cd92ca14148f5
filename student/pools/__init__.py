"""Pool implementations behind `student.pool.make_pool`: in-process, local processes, Ray actors."""
