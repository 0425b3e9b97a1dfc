"""Classical baselines: colour and morphology rules that find artifacts (:mod:`.rules`) and Telea's
fast-marching inpainting that removes them (:mod:`.telea`)."""
