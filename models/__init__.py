"""Models: training, evaluation, release, scoring and explanation.

Before any module here loads LightGBM or scikit-learn (and with them libgomp, which reads
this once): OpenMP threads that wait for work spin for a short while only, then sleep.
libgomp's default spin made two trainings at once on 2 cores 70x slower than one (76 s
instead of 1.1 s for 150 rounds on 60,000 x 56, both with num_threads 2), since each
process's spinning threads starve the other's working ones; with 1,000 spins they took
2.6 s, and one training alone is as fast as before (1.05-1.1 s). A value the user set wins.
"""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "1000")
