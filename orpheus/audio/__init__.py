"""Audio into model input, without TensorFlow: decoding (`decode`), features (`features`), the record of their
settings (`settings`) and cutting features into windows (`windows`)."""
