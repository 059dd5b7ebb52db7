"""The OCR pipeline around the character CNN: charset and language data, fonts, rendering, line
cutting, the bigram language model and Viterbi decoding, and ``python -m ocr read``."""
