// Anchors the precompiled LibTorch header (torch_pch.h) that the other targets reuse.
