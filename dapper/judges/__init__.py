"""Measuring models of the embedded world, trained on toycars renders with ground truth: the study's
evaluation *oracles* (identity, pose), which only ever measure, and the method's *annotators* (pose
annotator, vehicle detector), its stand-ins for the paper's outside-data labellers. Both are small
networks with fixed-step training (:mod:`dapper.fitting`) and one file format (:mod:`dapper.modelfile`).
"""
