"""PyTorch's MNIST example (github.com/pytorch/examples, mnist/main.py, BSD-3-Clause), kept in
its structure so that examples/mnist_assist.py can show ASSIST as a small diff against it.

Changes from upstream, shared by both files: torchvision is not used (a small IDX reader below
yields the same normalised 1x28x28 tensors as ``datasets.MNIST`` with ToTensor + Normalize),
``--data-dir`` replaces the hard-coded '../data', and ``--limit N`` keeps the first N
training and test images for quick runs.
"""
from __future__ import print_function
import argparse
import gzip
import os
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR
from assist.integration import IndexedDataset, Selector


def read_idx(path):
    """An IDX file (the MNIST distribution format), plain or gzipped as downloaded (``<path>.gz``),
    as a uint8 tensor of its stored shape."""
    if not os.path.exists(path):
        path += '.gz'
    with (gzip.open if path.endswith('.gz') else open)(path, 'rb') as handle:
        data = handle.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).copy()).reshape(shape)


class MNIST(torch.utils.data.Dataset):
    """Stand-in for torchvision.datasets.MNIST: reads <root>/MNIST/raw/*-ubyte (or *-ubyte.gz)."""

    def __init__(self, root, train=True, transform=None):
        prefix = os.path.join(root, 'MNIST', 'raw', 'train' if train else 't10k')
        self.data = read_idx(prefix + '-images-idx3-ubyte').unsqueeze(1)  # N x 1 x 28 x 28, uint8
        self.targets = read_idx(prefix + '-labels-idx1-ubyte').long()
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        image = self.data[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])


def to_normalized_tensor(image):
    """transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])"""
    return (image.float() / 255 - 0.1307) / 0.3081


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def train(args, model, device, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target, index, weight) in enumerate(args.assist.batches(train_loader, model)):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        losses = F.nll_loss(output, target, reduction='none')
        loss = (losses * weight).mean()
        args.assist.feedback(index, losses, output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % args.log_interval == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                epoch, batch_idx * len(data), len(train_loader.dataset),
                100. * batch_idx / len(train_loader), loss.item()))
            if args.dry_run:
                break


def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction='sum').item()  # sum up batch loss
            pred = output.argmax(dim=1, keepdim=True)  # get the index of the max log-probability
            correct += pred.eq(target.view_as(pred)).sum().item()

    test_loss /= len(test_loader.dataset)

    print('\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n'.format(
        test_loss, correct, len(test_loader.dataset),
        100. * correct / len(test_loader.dataset)))


def main():
    # Training settings
    parser = argparse.ArgumentParser(description='PyTorch MNIST Example')
    parser.add_argument('--batch-size', type=int, default=64, metavar='N',
                        help='input batch size for training (default: 64)')
    parser.add_argument('--test-batch-size', type=int, default=1000, metavar='N',
                        help='input batch size for testing (default: 1000)')
    parser.add_argument('--epochs', type=int, default=14, metavar='N',
                        help='number of epochs to train (default: 14)')
    parser.add_argument('--lr', type=float, default=1.0, metavar='LR',
                        help='learning rate (default: 1.0)')
    parser.add_argument('--gamma', type=float, default=0.7, metavar='M',
                        help='Learning rate step gamma (default: 0.7)')
    parser.add_argument('--no-cuda', action='store_true', default=False,
                        help='disables CUDA training')
    parser.add_argument('--no-mps', action='store_true', default=False,
                        help='disables macOS GPU training')
    parser.add_argument('--dry-run', action='store_true', default=False,
                        help='quickly check a single pass')
    parser.add_argument('--seed', type=int, default=1, metavar='S',
                        help='random seed (default: 1)')
    parser.add_argument('--log-interval', type=int, default=10, metavar='N',
                        help='how many batches to wait before logging training status')
    parser.add_argument('--save-model', action='store_true', default=False,
                        help='For Saving the current Model')
    parser.add_argument('--data-dir', default='../data', metavar='DIR',
                        help='folder holding MNIST/raw/*-ubyte (default: ../data)')
    parser.add_argument('--limit', type=int, default=0, metavar='N',
                        help='use only the first N training and test images (default: all)')
    parser.add_argument('--strategy', default='batchwise', help='ASSIST strategy (default: batchwise)')
    args = parser.parse_args()
    use_cuda = not args.no_cuda and torch.cuda.is_available()
    use_mps = not args.no_mps and torch.backends.mps.is_available()

    torch.manual_seed(args.seed)

    if use_cuda:
        device = torch.device("cuda")
    elif use_mps:
        device = torch.device("mps")
    else:
        device = torch.device("cpu")

    train_kwargs = {'batch_size': args.batch_size}
    test_kwargs = {'batch_size': args.test_batch_size}
    if use_cuda:
        cuda_kwargs = {'num_workers': 1,
                       'pin_memory': True,
                       'shuffle': True}
        train_kwargs.update(cuda_kwargs)
        test_kwargs.update(cuda_kwargs)

    transform = to_normalized_tensor
    dataset1 = MNIST(args.data_dir, train=True, transform=transform)
    dataset2 = MNIST(args.data_dir, train=False, transform=transform)
    if args.limit:
        dataset1 = torch.utils.data.Subset(dataset1, range(args.limit))
        dataset2 = torch.utils.data.Subset(dataset2, range(args.limit))
    dataset1 = IndexedDataset(dataset1)
    args.assist = Selector(args.strategy, dataset1, batch_size=args.batch_size, epochs=args.epochs, seed=args.seed)
    train_kwargs.update(shuffle=False, sampler=args.assist.epoch_sampler())
    train_loader = torch.utils.data.DataLoader(dataset1,**train_kwargs)
    test_loader = torch.utils.data.DataLoader(dataset2, **test_kwargs)

    model = Net().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)

    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    for epoch in range(1, args.epochs + 1):
        train(args, model, device, train_loader, optimizer, epoch)
        test(model, device, test_loader)
        scheduler.step()

    if args.save_model:
        torch.save(model.state_dict(), "mnist_cnn.pt")


if __name__ == '__main__':
    main()
