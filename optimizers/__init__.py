"""Optimisers no well-kept library provides: Gauss–Newton with SVRG for linear autoencoders."""
