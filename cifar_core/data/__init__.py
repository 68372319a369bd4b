"""Data: reading CIFAR-10 from its sources into arrays (with a cache), the gallery's samples and
statistics, and checks of files a user uploads. No TensorFlow, no store."""
