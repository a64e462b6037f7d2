"""The miniature of Stable Diffusion shipped in the package (docs: "The miniature").

Real 28x28 MNIST digits with measured captions (:mod:`.data`), diffusers components in diffusers'
own layout under ``models/weights/mini`` (:mod:`.components`), trained by :mod:`.training`
(``scripts/train_mini.py``); students registered as ``mini-lcm``, ``mini-lcm-lora`` and
``mini-lightning``, teacher ``mini`` (:mod:`.zoo`, recipes in :mod:`.recipes`); the shipped
digit-and-attribute classifier scores samples (:mod:`.classifier`).
"""
