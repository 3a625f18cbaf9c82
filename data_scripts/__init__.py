"""Download, verify and prepare the real datasets the seed papers use (book appendix "Getting the
real datasets").

One module per dataset, each runnable as ``python -m data_scripts.<module>`` and exposing
``INFO`` (source, terms, citation, files) and ``prepare(raw, root=None, *, allow_partial=False)``:

``kvasir_seg``, ``cvc_clinicdb``, ``polyp_benchmark``, ``busi``, ``covid19_ct``, ``goals``, ``ph2``,
``isic2016``, ``isic2017``, ``isic2016_ph2``, ``montgomery``, ``lung_ct``, ``digestpath``, ``acdc``,
``synapse``.

Shared helpers: :mod:`.download` (streamed, resumable, checksum-verified downloads),
:mod:`.archive` (safe unpacking), :mod:`.prepare` (mask repairs, splits, verification),
:mod:`.volume` (NIfTI/h5 slicing), :mod:`.common` (provenance, raw input, command line).
"""
