__title__ = "spacy-msnr"
__version__ = "0.1.0"
