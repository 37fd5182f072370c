"""The spiking layers, split as in spikingjelly: :mod:`.surrogate` (spike functions),
:mod:`.loop` (the reference LIF loop), :mod:`.kernels` (fused LIF kernels), :mod:`.functional`
(the backend table and ``lif_multistep``) and :mod:`.neuron` (the :class:`LIF` module)."""
