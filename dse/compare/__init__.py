"""The paper's comparisons: reference families from torchvision counted pycls's way
(`references`, torch), runtime against flops and activations (`speed`, torch; its fits in
`speedfit`), and export to pycls, timm, torchvision and torch files (`export`)."""
