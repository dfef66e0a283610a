"""The files stages meet through: a shard folder's contract without TensorFlow (`dataset`), the TFRecord example
codec (`tfrecord`), run directories with the one resolver and loader of a model (`rundir`) and the clean tag
database (`tagdb`)."""
