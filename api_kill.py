from batchrunner import BatchRunner
BatchRunner(["sleep 43", "sleep 44"], mode="parallel", verbose=False).run()
