from .bases import DATASET_REGISTRY, ReidDataset, build_dataset, dataset_problems
from .cuhk01 import CUHK01
from .list_files import ListFiles, parse_list_file
from .market_style import CUHK03NP, Market1501, MarketLayout, MarketLayoutDataset, VeRi
from .msmt17 import MSMT17
from .synthetic import Synthetic
