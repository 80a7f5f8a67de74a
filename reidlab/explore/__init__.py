"""Interactive views over finished runs, for JupyterLab: a query browser, a pair inspector and a class map.

Each view is built on an :class:`ExploredRun` (a run folder: config, checkpoints, test features cached in
``<run_dir>/explore/``) and displays as an ipywidgets view, or as a static figure where widgets cannot render::

    run = ExploredRun("runs/train")  # its last checkpoint
    QueryBrowser(run, compare=ExploredRun("runs/train_sph"))
    PairInspector(run)
    ClassMap(run)

In the query browser and the pair inspector a click on a match or a pair shows both images' activation maps for
their similarity (:class:`ActivationMap`, also usable on its own)::

    map_a, map_b = ActivationMap(run.model, run.config).pair("a.jpg", "b.jpg")
"""

from .activation import ActivationMap
from .classes import ClassMap
from .pairs import PairInspector, metric_features
from .queries import QueryBrowser
from .run import MARKS, ExploredRun, Features, Ranking, TrainFeatures

__all__ = ["ActivationMap", "ClassMap", "ExploredRun", "Features", "MARKS", "PairInspector", "QueryBrowser", "Ranking",
           "TrainFeatures", "metric_features"]
