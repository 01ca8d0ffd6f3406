"""Networks. Each is built from the datamodule's input shape and number of classes:
`Net(input_shape=(C, H, W), num_classes=K, **options)`; conf/model/NAME.yaml names it and its options."""
