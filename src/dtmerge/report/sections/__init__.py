"""The report's sections: each module holds builders `ReportContext -> Part` (and their renderers),
listed in order in `report/build.py`'s `SECTION_BUILDERS`."""
