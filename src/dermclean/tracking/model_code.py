"""MLflow "model from code" entry point: ``mlflow.pyfunc.log_model(python_model=<this file>)``.

Kept to a single ``set_model`` call so that loading a logged dermclean model executes only
dermclean's own installed code (see :mod:`dermclean.tracking.pyfunc_model`), never pickles.
"""

import mlflow

from dermclean.tracking.pyfunc_model import DermcleanModel

mlflow.models.set_model(DermcleanModel())
