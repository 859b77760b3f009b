from .bases import DATASET_REGISTRY, ReidDataset, build_dataset
from .market_style import CUHK03NP, VeRi, Market1501, MarketLayoutDataset
from .msmt17 import MSMT17
from .synthetic import Synthetic
