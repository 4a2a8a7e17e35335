"""Readers, one module per file format: NIfTI (:mod:`.nifti`, nibabel with ISA-L inflate), the
SimpleITK formats MHD/RAW and NIfTI (:mod:`.sitk`), 2D rasters PNG/JPEG/TIFF/BMP (:mod:`.raster`).
Every reader checks a file's header before decoding and raises DatakitError naming the file."""
