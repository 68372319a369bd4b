"""View models of the pages that need more than a table: the Builder's editor (its state and every
edit as a pure function) and the Training page's queue monitor. Plain data in, plain data out;
the pages only draw what these return, and reach the lab through `cifar_core.lab.Lab`."""
