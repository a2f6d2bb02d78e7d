"""Signal models behind :mod:`hybrid_asd.data.synthetic`.

``dsp``: building blocks (harmonic series, resonances, impacts, coloured noise);
``background``: factory environments; ``machines``: the seven machine-type models and their faults.
"""
